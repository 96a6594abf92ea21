"""AmsiBatchLink becomes "an eSite External batch we know of"; AmsiBatchEntry records where
each posting landed.

- A link gets a kind (payments / return) and the SettlementDate last sent; its host batch is a
  ForeignKey (a host reversals batch can hold several per-return eSite batches); its external
  number is unique per connection instead of platform-wide.
- Existing links are payments batches (the field default). Until now every posting was sent
  with ClientJnlNo = the host batch it reports under, so each posted posting landed in the link
  of that host batch: entries are filled in from that, so an already settled batch still
  totals what it was settled at and is not settled again.
"""

import django.db.models.deletion
from django.db import migrations, models


def entries_for_existing_links(apps, schema_editor):
    AmsiBatchLink = apps.get_model("integrations_amsi", "AmsiBatchLink")
    AmsiBatchEntry = apps.get_model("integrations_amsi", "AmsiBatchEntry")
    Posting = apps.get_model("integrations", "Posting")
    for link in AmsiBatchLink.objects.all().iterator():
        posted = Posting.objects.filter(connection_id=link.connection_id, state="posted")
        rows = [
            AmsiBatchEntry(posting_id=p.pk, link_id=link.pk, amount=p.payment.amount)
            for p in posted.filter(kind="payment", payment__batch_id=link.batch_id).select_related(
                "payment"
            )
        ] + [
            AmsiBatchEntry(posting_id=p.pk, link_id=link.pk, amount=-p.reversal.amount)
            for p in posted.filter(
                kind="reversal", reversal__batch_id=link.batch_id
            ).select_related("reversal")
        ]
        AmsiBatchEntry.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0004_posting_enqueued_at"),
        ("integrations_amsi", "0002_amsiconnection"),
        ("rentplatform", "0002_nacha_return_codes"),
    ]

    operations = [
        migrations.AddField(
            model_name="amsibatchlink",
            name="kind",
            field=models.CharField(
                choices=[
                    ("payments", "Payments (ClientJnlNo = our batch id)"),
                    ("return", "Return (ExternalJnlNo = the original ClientTransactionID)"),
                ],
                default="payments",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="amsibatchlink",
            name="settlement_date",
            field=models.DateField(
                blank=True,
                help_text="The bank deposit date last sent.",
                null=True,
                verbose_name="SettlementDate",
            ),
        ),
        migrations.AlterField(
            model_name="amsibatchlink",
            name="batch",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="amsi_links",
                to="rentplatform.depositbatch",
                verbose_name="reports under (our batch)",
            ),
        ),
        migrations.AlterField(
            model_name="amsibatchlink",
            name="client_jnl_no",
            field=models.CharField(
                help_text="ClientJnlNo / ExternalJnlNo: our batch id, or for a return batch the "
                "original ClientTransactionID.",
                max_length=20,
                verbose_name="external number",
            ),
        ),
        migrations.AddIndex(
            model_name="amsibatchlink",
            index=models.Index(fields=["connection", "esite_batch_no"], name="amsi_batch_esite_no"),
        ),
        migrations.AddConstraint(
            model_name="amsibatchlink",
            constraint=models.UniqueConstraint(
                fields=("connection", "client_jnl_no"), name="amsi_batch_external_number"
            ),
        ),
        migrations.CreateModel(
            name="AmsiBatchEntry",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("amount", models.DecimalField(decimal_places=2, max_digits=12)),
                ("recorded_at", models.DateTimeField(auto_now=True)),
                (
                    "link",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="entries",
                        to="integrations_amsi.amsibatchlink",
                    ),
                ),
                (
                    "posting",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="amsi_entry",
                        to="integrations.posting",
                    ),
                ),
            ],
            options={
                "verbose_name": "AMSI batch entry",
                "verbose_name_plural": "AMSI batch entries",
            },
        ),
        migrations.RunPython(entries_for_existing_links, migrations.RunPython.noop),
    ]
