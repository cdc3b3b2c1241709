"""memifctl: the command-line client of memifd's CLI socket (see :mod:`.main`)."""
