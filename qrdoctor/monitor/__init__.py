"""Many nodes and monitoring: fleet runs over an inventory, Nagios and Prometheus outputs."""
