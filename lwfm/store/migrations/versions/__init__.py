"""One script per schema version; its revision id is the version lwfm_meta records."""
