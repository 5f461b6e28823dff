"""The public API is small and deliberate: this test changes only when it does."""

import gsomia


def test_exported_names() -> None:
    assert sorted(gsomia.__all__) == [
        "AccessDecision",
        "AccessDenied",
        "Agreement",
        "AgreementError",
        "AgreementState",
        "AllOf",
        "AlternativeLabel",
        "AuthenticationError",
        "Catalogue",
        "Check",
        "Classification",
        "ConfigError",
        "ConflictError",
        "Consent",
        "ConsentKind",
        "DataFileError",
        "EnvelopeError",
        "Equivalence",
        "EquivalenceRow",
        "Event",
        "EventKind",
        "GsomiaError",
        "InstantError",
        "InvalidInputError",
        "LabelError",
        "LabelRules",
        "LifecycleError",
        "Marking",
        "NotFoundError",
        "Notice",
        "Party",
        "PayloadTooLargeError",
        "Person",
        "ProofError",
        "ReleaseDecision",
        "ReleaseEngine",
        "ReleaseRefused",
        "ReleaseRequest",
        "Role",
        "Scheme",
        "SecurityLabel",
        "Status",
        "StoreError",
        "TermRules",
        "Topology",
        "UnknownNameError",
        "decide_read",
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
