"""The demo: the 2014–2023 story as data and a KOR/JPN/USA network on loopback to play it on.

Its neighbours (the CLI, the tests, the benchmarks) import the public modules named in
``__all__``: ``network`` (build, start/status/stop, serve_in_threads) and ``scenario`` (the flows
decided at each event, replayed by the release engine alone or over real nodes; the duties after
delivery; where KOR's missile tracks go at the story's instants). It sits above the API and below
the CLI; nothing but the CLI imports it.
"""

__all__ = ["network", "scenario"]
