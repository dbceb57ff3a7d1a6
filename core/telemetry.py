"""OpenTelemetry tracing: one SDK tracer provider per process, exporting only when asked.

Spans are exported (OTLP over HTTP, in batches) only when ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set; the SDK reads that variable and the other standard ``OTEL_*`` ones
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
``OTEL_EXPORTER_OTLP_HEADERS``...) itself (docs/contract.md §3). Without it, a provider still
makes trace and span ids, so records and log lines carry a trace id, and nothing leaves the
process. The provider is handed to what needs it, never installed globally: tests run
several, each with its own exporter.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from core.settings import Settings


def exporting(settings: Settings) -> bool:
    return settings.otel_exporter_otlp_endpoint is not None


def tracer_provider(
    settings: Settings, service: str, *, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A provider for ``service`` (unless ``OTEL_SERVICE_NAME`` names it), exporting to
    ``exporter``, else over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)
    if exporter is None and exporting(settings):
        # Imported here: the exporter's protobuf and HTTP stack is loaded only when used.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
