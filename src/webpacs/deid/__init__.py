"""De-identification (PS3.15 Annex E): the profile (``profile``) and the runs over the
store (``run``)."""
