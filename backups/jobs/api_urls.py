from rest_framework.routers import SimpleRouter

from . import api_views

router = SimpleRouter()
router.register("jobs", api_views.BackupJobViewSet, basename="backup-job")
router.register("job-schedules", api_views.JobScheduleViewSet, basename="job-schedule")

urlpatterns = router.urls
