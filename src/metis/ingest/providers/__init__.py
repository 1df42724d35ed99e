"""Provider admin usage/cost clients and their normalizers into the canonical record."""
