"""The Redis data layer: every key ifcflow and arq keep for it, and the one module that owns job state."""
