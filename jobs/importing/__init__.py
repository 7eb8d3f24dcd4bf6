"""Loading subscriber and top-up files."""
