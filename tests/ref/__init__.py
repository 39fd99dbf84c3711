"""Reference implementations used by the script tests."""
