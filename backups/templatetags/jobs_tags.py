"""Template helpers of the job pages."""
from django import template

from ..jobs.selection import selection_summary

register = template.Library()


@register.filter
def job_selection_summary(job):
    return selection_summary(job)


@register.filter
def get_item(mapping, key):
    return mapping.get(key, key) if mapping else key
