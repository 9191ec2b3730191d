"""The `datadebit` command line."""
