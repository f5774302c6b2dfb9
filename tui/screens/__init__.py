"""Dashboard screens: the main one and the modal ones (help, details, filter)."""
