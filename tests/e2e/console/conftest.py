from tests.volunteering.test_service_proof import region  # noqa: F401 - a fixture (certified service)
