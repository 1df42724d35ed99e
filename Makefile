# One task runner for the README, CI and developers.
.PHONY: demo test test-sqlite lint bench

demo:            ## install and run the main job on the embedded default
	scripts/demo.sh

test:            ## install and run the suite on SQLite and PostgreSQL
	scripts/test.sh

test-sqlite:     ## quick: the suite on SQLite only
	METIS_TEST_BACKENDS=sqlite scripts/test.sh

lint:            ## ruff and mypy --strict
	scripts/lint.sh

bench:           ## benchmarks (not in CI); see docs/performance.md
	scripts/bench.sh
