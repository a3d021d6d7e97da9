"""The faces people use: the sonic CLI, the REST service and the web interface."""
