"""The live dashboard (`bus web`): a bridge from the bus to browsers.

board.py holds the state (a card per engine, built from the run's events);
server.py follows a supervisor and serves the page, the JSON feed and the
screenshots. Needs the `web` extra (aiohttp). The feed is documented in
docs/WEB.md.
"""
