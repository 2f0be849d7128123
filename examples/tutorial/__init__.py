"""The five programs of the WebSocket basics lesson, as this project writes them.

Each one does what the lesson's program does, with nexios's public API, and says what
happens on bad input. Run any of them with ``nexios run``::

    nexios run examples.tutorial.echo:app

1. :mod:`~examples.tutorial.echo` — "WebSocket Setup": a text echo at ``/ws``.
2. :mod:`~examples.tutorial.routing` — "WebSocket Routing": the three ways to register
   a route.
3. :mod:`~examples.tutorial.message_types` — "Message Types": text, JSON, binary, in turn.
4. :mod:`~examples.tutorial.channel` — "Channel System": a ``Channel`` per connection.
5. :mod:`~examples.tutorial.error_handling` — "Error Handling": invalid input answered
   and logged.
"""
