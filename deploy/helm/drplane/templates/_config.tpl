{{/*
Each service's configuration file, with the key names of the service's
configuration struct (see "Configuring a service" in the repository README). The
services refuse unknown keys, so only those keys are written. Passwords and
API keys are never written: the Deployments pass them from existing Secrets
as DRPLANE_* environment variables, which override the file.
*/}}

{{- define "drplane.coordinator.config" -}}
{{- $c := .Values.coordinator -}}
{{- $a := $c.audit -}}
{{ include "drplane.commonConfig" . }}
api:
  grpc_addr: {{ printf "0.0.0.0:%d" (int $c.ports.grpc) | quote }}
  http_addr: {{ printf "0.0.0.0:%d" (int $c.ports.http) | quote }}
  {{- if $c.tls.enabled }}
  tls:
    cert_file: /etc/drplane/api-tls/{{ $c.tls.certKey }}
    key_file: /etc/drplane/api-tls/{{ $c.tls.keyKey }}
    {{- if $c.tls.caKey }}
    ca_file: /etc/drplane/api-tls/{{ $c.tls.caKey }}
    {{- end }}
  {{- end }}
auth:
  tokens:
    {{- range $c.auth.tokens }}
    - name: {{ .name | quote }}
      role: {{ .role | quote }}
      sha256: {{ .sha256 | quote }}
    {{- end }}
audit:
  store: {{ $a.store | quote }}
  {{- if eq $a.store "embedded" }}
  dir: /var/lib/drplane/audit
  {{- else }}
  elasticsearch:
    addresses:
      {{- toYaml $a.elasticsearch.addresses | nindent 6 }}
    {{- if $a.elasticsearch.username }}
    username: {{ $a.elasticsearch.username | quote }}
    {{- end }}
    {{- if $a.elasticsearch.caSecret }}
    ca_file: /etc/drplane/es-ca/{{ $a.elasticsearch.caKey }}
    {{- end }}
  {{- end }}
  index: {{ $a.index | quote }}
  outbox_retention: {{ $a.outboxRetention | quote }}
nats_url: {{ .Values.nats.url | quote }}
{{ toYaml $c.config }}
{{- end }}

{{- define "drplane.haagent.config" -}}
{{- $m := .Values.haagent.mysql -}}
{{ include "drplane.commonConfig" . }}
mysql:
  user: {{ $m.user | quote }}
  repl_user: {{ $m.replUser | quote }}
{{ toYaml .Values.haagent.config }}
{{- end }}

{{- define "drplane.reship.config" -}}
{{- $m := .Values.reship.mysql -}}
{{ include "drplane.commonConfig" . }}
nats_url: {{ .Values.nats.url | quote }}
mysql:
  cluster: {{ $m.cluster | quote }}
  user: {{ $m.user | quote }}
{{ toYaml .Values.reship.config }}
{{- end }}

{{- define "drplane.collector.config" -}}
{{- $m := .Values.collector.mysql -}}
{{ include "drplane.commonConfig" . }}
nats_url: {{ .Values.nats.url | quote }}
mysql:
  cluster: {{ $m.cluster | quote }}
  {{- if $m.database }}
  database: {{ $m.database | quote }}
  {{- end }}
  user: {{ $m.user | quote }}
{{ toYaml .Values.collector.config }}
{{- end }}

{{/* DRPLANE_MYSQL_PASSWORD from a service's mysql.existingSecret. */}}
{{- define "drplane.mysqlPasswordEnv" -}}
- name: DRPLANE_MYSQL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .passwordKey | quote }}
{{- end }}
