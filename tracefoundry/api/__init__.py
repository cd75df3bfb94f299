"""DRF plumbing shared by every app's API: errors, input fields, parsers, renderers, pagination,
permissions and the OpenAPI helpers."""
