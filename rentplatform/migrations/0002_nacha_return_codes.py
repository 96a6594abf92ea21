from django.db import migrations


def seed(apps, schema_editor):
    from rentplatform.data.nacha_return_codes import all_codes

    Code = apps.get_model("rentplatform", "NachaReturnCode")
    existing = set(Code.objects.values_list("code", flat=True))
    Code.objects.bulk_create(
        [
            Code(code=code, description=description, counts_as_nsf=nsf)
            for code, description, nsf in all_codes()
            if code not in existing
        ]
    )


class Migration(migrations.Migration):
    dependencies = [("rentplatform", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
