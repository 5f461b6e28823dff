"""The public API is small and deliberate: this test changes only when it does."""

import gsomia


def test_exported_names() -> None:
    assert sorted(gsomia.__all__) == [
        "Agreement",
        "AgreementError",
        "AgreementState",
        "AllOf",
        "AlternativeLabel",
        "Catalogue",
        "Check",
        "Classification",
        "Consent",
        "ConsentKind",
        "DataFileError",
        "Equivalence",
        "EquivalenceRow",
        "Event",
        "EventKind",
        "GsomiaError",
        "InstantError",
        "LabelError",
        "LifecycleError",
        "Marking",
        "Notice",
        "Party",
        "ReleaseDecision",
        "ReleaseEngine",
        "ReleaseRefused",
        "ReleaseRequest",
        "Scheme",
        "SecurityLabel",
        "Status",
        "TermRules",
        "Topology",
        "UnknownNameError",
        "load_catalogue",
        "load_events",
        "parse_instant",
        "standard_rules",
    ]
    for name in gsomia.__all__:
        assert getattr(gsomia, name) is not None


def test_every_error_derives_from_the_root() -> None:
    for name in gsomia.__all__:
        obj = getattr(gsomia, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, gsomia.GsomiaError), name
