"""The web console: static files served by the function app (see console/README.md)."""
