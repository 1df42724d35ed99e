"""Analytics: admin auth, daily rollups, the query layer, the HTTP API and exports."""
