"""The scorer's adapters: the object store, TorchServe and PostgreSQL."""
