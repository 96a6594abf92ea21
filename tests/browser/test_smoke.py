import pytest

from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_home_shows_the_dashboard(page, shot, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.test", "pw-123456")
    log_in(page, "boss", "pw-123456", admin=True)
    page.goto("/admin/")
    shot(page, "smoke-admin-home")
    assert page.get_by_text("Accounting integrations").first.is_visible()
