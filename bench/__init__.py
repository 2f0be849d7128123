"""Benchmarks: nexios against a raw ASGI app and Starlette, on the same uvicorn.

See ``bench/README.md``. ``python -m bench.run --quick`` is the smoke test.
"""
