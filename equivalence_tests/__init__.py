"""lrnn-reference's verification suite, importable.

* ``equivalence_tests.strategies``: hypothesis strategies named by what they draw;
* ``equivalence_tests.tolerances``: the one tolerance table and ``assert_close``;
* ``equivalence_tests.oracles``: scipy.signal's responses made MIMO, the frequency-response formula by solves;
* ``equivalence_tests.conformance``: the conformance kit, the suite pointed at anyone's implementation
  through an adapter (``check(adapter) -> Report``; ``python -m equivalence_tests.conformance MODULE:ADAPTER``);
* ``equivalence_tests.peers``: adapters for third-party implementations and their report.

The ``test_*.py`` files beside these modules are the project's own test suite (``make test``).
"""
