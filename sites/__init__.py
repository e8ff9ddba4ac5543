"""Site drivers shipped with lwfm, imported as ``lwfm.sites.<name>``."""
