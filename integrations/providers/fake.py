class FakeProvider:
    id = "fake"
