"""Bundles: a thread exported as a zipped RO-Crate, and its import and merge."""
