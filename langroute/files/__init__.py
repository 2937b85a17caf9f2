"""Data files on disk: reading text with line-accurate errors, writing durably.

* :mod:`~langroute.files.textfiles`: UTF-8 files whose undecodable bytes are reported by line;
* :mod:`~langroute.files.durable`: atomic replacement of a file (write, fsync, rename, fsync
  the folder);
* :mod:`~langroute.files.journal`: append-only JSON Lines that survive a crash.
"""
