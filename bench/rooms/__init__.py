"""The rooms benchmark: many small rooms, everybody talking, two processes on one Redis.

nexios against python-socketio, Django Channels and Starlette + broadcaster, with the
same client. See ``bench/README.md`` (section *Rooms*) and ``docs/rooms.md``.
"""
