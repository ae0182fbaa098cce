{{/* Names, labels and shared fragments. */}}

{{- define "linewatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "linewatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "linewatch.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "linewatch.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Common labels; call with the root context. */}}
{{- define "linewatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "linewatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: linewatch
{{- end }}

{{/* Labels that select the pods of one component: dict "root" $ "name" "ingest". */}}
{{- define "linewatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "linewatch.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* Object name of one component: dict "root" $ "name" "ingest". */}}
{{- define "linewatch.componentName" -}}
{{- printf "%s-%s" (include "linewatch.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A component's settings: the default block overlaid with its own (deep merge). */}}
{{- define "linewatch.componentValues" -}}
{{- $merged := mergeOverwrite (deepCopy .root.Values.default) (deepCopy .component) }}
{{- toYaml $merged }}
{{- end }}

{{/* Image reference: dict "root" $ "name" "ingest" "image" $c.image. */}}
{{- define "linewatch.image" -}}
{{- $repo := .image.repository | default (printf "linewatch-%s" .name) }}
{{- if .root.Values.global.imageRegistry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .root.Values.global.imageRegistry) $repo }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.image.tag | default .root.Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/* gRPC address of a component inside the cluster: dict "root" $ "name" "inference". */}}
{{- define "linewatch.grpcAddr" -}}
{{- $c := index .root.Values.components .name }}
{{- printf "%s:%v" (include "linewatch.componentName" .) $c.port }}
{{- end }}

{{/* Names of the generated Secrets. */}}
{{- define "linewatch.apiTokenSecret" -}}
{{- .Values.apiToken.existingSecret | default (printf "%s-api-token" (include "linewatch.fullname" .)) }}
{{- end }}

{{- define "linewatch.postgresSecret" -}}
{{- printf "%s-postgresql" (include "linewatch.fullname" .) }}
{{- end }}

{{/* The MQTT URL every MQTT client uses. */}}
{{- define "linewatch.mqttUrl" -}}
{{- if .Values.mosquitto.enabled }}
{{- printf "mqtt://%s-mosquitto:%v" (include "linewatch.fullname" .) .Values.mosquitto.port }}
{{- else }}
{{- required "mqtt.url is required when mosquitto.enabled is false" .Values.mqtt.url }}
{{- end }}
{{- end }}

{{/* Environment entries that carry the database URL of one service: dict "root" $ "prefix" "LINEWATCH_INGEST__". */}}
{{- define "linewatch.databaseEnv" -}}
{{- $root := .root }}
{{- if $root.Values.postgresql.enabled }}
{{- $roles := $root.Values.postgresql.serviceRoles }}
# {{ ternary (printf "its own role linewatch_%s (files/postgres-roles.sql)" .name) "the owner role" $roles }}
- name: LINEWATCH_PG_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "linewatch.postgresSecret" $root }}
      key: {{ ternary (printf "%s-password" .name) "password" $roles }}
- name: {{ .prefix }}DATABASE_URL
  value: {{ printf "postgresql+asyncpg://%s:$(LINEWATCH_PG_PASSWORD)@%s-postgresql:5432/%s" (ternary (printf "linewatch_%s" .name) $root.Values.postgresql.username $roles) (include "linewatch.fullname" $root) $root.Values.postgresql.database | quote }}
{{- else if $root.Values.database.existingSecret }}
- name: {{ .prefix }}DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.database.existingSecret }}
      key: {{ $root.Values.database.secretKey }}
{{- else if $root.Values.database.url }}
- name: {{ .prefix }}DATABASE_URL
  value: {{ $root.Values.database.url | quote }}
{{- end }}
{{- end }}

{{/* The OpenTelemetry endpoint, empty when tracing export is off. */}}
{{- define "linewatch.otlpEndpoint" -}}
{{- if .Values.otelCollector.enabled }}
{{- printf "http://%s-otel-collector:4317" (include "linewatch.fullname" .) }}
{{- else }}
{{- .Values.otel.endpoint }}
{{- end }}
{{- end }}

{{/* Pod-level security context shared by the chart's own workloads. */}}
{{- define "linewatch.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "linewatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "linewatch.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/* A third-party image reference: the image block of mosquitto, postgresql or the collector. */}}
{{- define "linewatch.thirdPartyImage" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}
{{- end }}

{{/*
A generated secret value kept across upgrades: dict "root" $ "secret" name "key" key
"value" explicit. An explicit value wins; otherwise the value already in the cluster
(lookup); otherwise 40 random characters.
*/}}
{{- define "linewatch.persistentSecretValue" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where devices reach the gateway (firmware downloads): publicBaseUrl, the first Ingress host, or the in-cluster Service. */}}
{{- define "linewatch.publicBaseUrl" -}}
{{- if .Values.publicBaseUrl }}
{{- .Values.publicBaseUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) (index .Values.ingress.hosts 0).host }}
{{- else }}
{{- printf "http://%s:%v" (include "linewatch.componentName" (dict "root" . "name" "gateway")) .Values.components.gateway.port }}
{{- end }}
{{- end }}

{{/* The Secret with the per-caller gRPC tokens (gateway, ingest, operator). */}}
{{- define "linewatch.grpcTokensSecret" -}}
{{- printf "%s-grpc-tokens" (include "linewatch.fullname" .) }}
{{- end }}

{{/* The Secret with the MQTT passwords of the services (and the stream-token key). */}}
{{- define "linewatch.mqttUsersSecret" -}}
{{- printf "%s-mqtt-users" (include "linewatch.fullname" .) }}
{{- end }}

{{/* One gRPC token (generated once, kept): dict "root" $ "caller" "gateway". */}}
{{- define "linewatch.grpcToken" -}}
{{- include "linewatch.persistentSecretValue" (dict "root" .root "secret" (include "linewatch.grpcTokensSecret" .root) "key" .caller "value" (index .root.Values.grpcAuth.tokens .caller | default "")) }}
{{- end }}

{{/* One service's MQTT password (generated once, kept): dict "root" $ "name" "ota". */}}
{{- define "linewatch.mqttPassword" -}}
{{- include "linewatch.persistentSecretValue" (dict "root" .root "secret" (include "linewatch.mqttUsersSecret" .root) "key" .name "value" "") }}
{{- end }}

{{/*
The callers a gRPC server accepts, as sha256 digests (the servers never hold another
service's token): dict "root" $ "name" "inference". Ingest's token is accepted by
inference (scoring, and GetModel: a model's labels and shadow version) and OTA (its role allows DeviceService/SendCommand only: alarms that act);
OTA's token by ingest (role ota: IngestService/QueryVerdictCounts, RaiseAlarm and ClearAlarms only: the rollout gate and its alarms).
*/}}
{{- define "linewatch.grpcCallers" -}}
{{- $root := .root }}
{{- $callers := list }}
{{- $callers = append $callers (printf "{name: gateway, role: gateway, sha256: %s}" (include "linewatch.grpcToken" (dict "root" $root "caller" "gateway") | sha256sum)) }}
{{- $callers = append $callers (printf "{name: operator, role: operator, sha256: %s}" (include "linewatch.grpcToken" (dict "root" $root "caller" "operator") | sha256sum)) }}
{{- $callers = append $callers (printf "{name: read-only, role: read-only, sha256: %s}" (include "linewatch.grpcToken" (dict "root" $root "caller" "readonly") | sha256sum)) }}
{{- if has .name (list "inference" "ota") }}
{{- $callers = append $callers (printf "{name: ingest, role: ingest, sha256: %s}" (include "linewatch.grpcToken" (dict "root" $root "caller" "ingest") | sha256sum)) }}
{{- end }}
{{- if eq .name "ingest" }}
{{- $callers = append $callers (printf "{name: ota, role: ota, sha256: %s}" (include "linewatch.grpcToken" (dict "root" $root "caller" "ota") | sha256sum)) }}
{{- end }}
{{- printf "[%s]" (join ", " $callers) }}
{{- end }}
