"""Dashboard widgets: each draws from a `Snapshot`, the store, or both."""
