"""The bundles API: import and dry replay (multipart uploads)."""
