"""XNAT integration: register stored scans and publish their quality results on the session."""
