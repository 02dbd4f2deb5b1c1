"""``webpacs check``: is everything the index names stored and intact, and nothing else?

- ``findings``: what a check reports (kinds, counts, the exit status);
- ``verify``: one stored object against its index record;
- ``walk``: the walk over the index, the stored objects, the derived documents and
  what interrupted writes left;
- ``derived``: which derived documents are stale, and rebuilding them;
- ``repair``: ``--repair``, acting on a walk's findings.

All of it runs online, beside a serving server: every finding is looked at again just
before it is reported or acted on.
"""
