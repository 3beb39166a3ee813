"""Tests of the JupyterLab integration: the launcher tile behind jupyter-server-proxy."""
