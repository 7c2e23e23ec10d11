"""The curator feature in one package: the dashboard and its login, the gap inbox, sites, feedback and ingest
runs — their routes (`*_routes.py`), services and SQL storage (`*_store.py`)."""
