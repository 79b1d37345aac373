from django.template.loader import render_to_string


def test_the_progress_bar_is_an_accessible_progressbar():
    html = render_to_string("includes/progress.html", {"value": 42, "label": "Backing up web"})
    assert 'role="progressbar"' in html and 'aria-valuenow="42"' in html and "width: 42%" in html
    assert 'aria-label="Backing up web"' in html


def test_the_usage_bar_turns_to_warning_and_danger_when_filling_up():
    ok = render_to_string("includes/usage_bar.html", {"used": 10 << 30, "total": 100 << 30})
    warn = render_to_string("includes/usage_bar.html", {"used": 80 << 30, "total": 100 << 30})
    full = render_to_string("includes/usage_bar.html", {"used": 95 * 10**9, "total": 100 * 10**9})   # decimal units
    assert 'aria-valuenow="10"' in ok and "usage-warn" not in ok and "usage-danger" not in ok
    assert "usage-warn" in warn and "usage-danger" in full
    assert "95.0\xa0GB of 100.0\xa0GB (95 %)" in full


def test_pagination_keeps_the_filter_in_its_links():
    from django.core.paginator import Paginator

    page = Paginator(list(range(120)), 50).get_page(2)
    html = render_to_string("includes/pagination.html", {"page_obj": page, "query": "actor=alice"})
    assert "?actor=alice&amp;page=1" in html and "?actor=alice&amp;page=3" in html
    assert "51–100 of 120" in html
