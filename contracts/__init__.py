"""What the gateway, the workers and the IFC services agree on: operations, request models, keys, wire formats."""
