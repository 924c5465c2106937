from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("functions", "0003_environment_runtime_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="build",
            name="python_version",
            field=models.CharField(blank=True, max_length=8),
        ),
    ]
