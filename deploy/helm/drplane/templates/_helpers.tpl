{{/*
Names. Every object of a release is named <fullname>-<service>[-<suffix>],
so several DCs' releases can share a namespace. The full name is cut to 40
characters so that every Service name stays a DNS label (63).
*/}}
{{- define "drplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "drplane.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* <fullname>-<component>; call with (dict "root" $ "component" "coordinator"). */}}
{{- define "drplane.componentName" -}}
{{- printf "%s-%s" (include "drplane.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "drplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "drplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "drplane.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Selector labels of a component: (dict "root" $ "component" "haagent"). */}}
{{- define "drplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "drplane.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of a component's objects. */}}
{{- define "drplane.labels" -}}
helm.sh/chart: {{ include "drplane.chart" .root }}
{{ include "drplane.selectorLabels" . }}
app.kubernetes.io/part-of: drplane
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
drplane.dev/dc: {{ .root.Values.dc | quote }}
drplane.dev/city: {{ .root.Values.city | quote }}
{{- end }}

{{/* Labels of objects that belong to no single component. */}}
{{- define "drplane.releaseLabels" -}}
helm.sh/chart: {{ include "drplane.chart" . }}
app.kubernetes.io/name: {{ include "drplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: drplane
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
drplane.dev/dc: {{ .Values.dc | quote }}
drplane.dev/city: {{ .Values.city | quote }}
{{- end }}

{{/* The image of a component. */}}
{{- define "drplane.image" -}}
{{- $v := index .root.Values .component -}}
{{- $repo := $v.image.repository -}}
{{- if not $repo -}}
{{- $repo = printf "%s/%s/%s" .root.Values.image.registry .root.Values.image.repository .component | trimPrefix "/" -}}
{{- end -}}
{{- $tag := $v.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end }}

{{/*
Checks of values that the schema cannot express. Included by every
workload template; fails the render with a message naming the value.
*/}}
{{- define "drplane.validate" -}}
{{- $dc := .Values.dc -}}
{{- if and .Values.nats.jetstreamDomain (ne .Values.nats.jetstreamDomain $dc) -}}
{{- fail (printf "nats.jetstreamDomain: %q differs from dc %q; drplane addresses every DC's streams by JetStream domain = DC name" .Values.nats.jetstreamDomain $dc) -}}
{{- end -}}
{{- $seen := dict -}}
{{- range .Values.nats.peers -}}
{{- if eq .dc $dc -}}
{{- fail (printf "nats.peers: %q is this release's own dc" .dc) -}}
{{- end -}}
{{- if hasKey $seen .dc -}}
{{- fail (printf "nats.peers: %q is listed twice" .dc) -}}
{{- end -}}
{{- $_ := set $seen .dc true -}}
{{- end -}}
{{- $c := .Values.coordinator -}}
{{- if and (eq $c.audit.store "embedded") $c.audit.persistence.enabled (gt (int $c.replicas) 1) -}}
{{- fail "coordinator.replicas: the embedded audit store on a persistent volume allows 1 replica; use coordinator.audit.store=elasticsearch for more" -}}
{{- end -}}
{{- $es := $c.audit.elasticsearch -}}
{{- if and (eq $c.audit.store "elasticsearch") $es.passwordKey (not $es.username) -}}
{{- fail "coordinator.audit.elasticsearch.username: required with passwordKey (basic auth)" -}}
{{- end -}}
{{- end }}

{{/*
The configuration keys every service shares, as YAML (the service's "id"
comes from DRPLANE_ID, the pod name). Secrets are never written here: they
come from existing Secrets through DRPLANE_* environment variables.
*/}}
{{- define "drplane.commonConfig" -}}
{{- $e := .Values.etcd -}}
dc: {{ .Values.dc | quote }}
health_addr: {{ printf "0.0.0.0:%d" (int .Values.healthPort) | quote }}
etcd:
  endpoints:
    {{- toYaml $e.endpoints | nindent 4 }}
  prefix: {{ $e.prefix | quote }}
  dial_timeout: {{ $e.dialTimeout | quote }}
  lease_ttl: {{ $e.leaseTTL | quote }}
  {{- if $e.auth.username }}
  username: {{ $e.auth.username | quote }}
  {{- end }}
  {{- if $e.tls.enabled }}
  tls:
    {{- range $key, $file := dict "ca_file" $e.tls.caKey "cert_file" $e.tls.certKey "key_file" $e.tls.keyKey }}
    {{- if $file }}
    {{ $key }}: /etc/drplane/etcd-tls/{{ $file }}
    {{- end }}
    {{- end }}
    {{- if $e.tls.serverName }}
    server_name: {{ $e.tls.serverName | quote }}
    {{- end }}
  {{- end }}
log:
  level: {{ .Values.log.level | quote }}
  format: {{ .Values.log.format | quote }}
{{- end }}

{{/* Environment every service gets: its id and the etcd password. */}}
{{- define "drplane.commonEnv" -}}
- name: DRPLANE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- with .Values.etcd.auth }}
{{- if .username }}
- name: DRPLANE_ETCD_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "etcd.auth.existingSecret is required with etcd.auth.username" .existingSecret | quote }}
      key: {{ .passwordKey | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Volume mounts every service gets. */}}
{{- define "drplane.commonMounts" -}}
- name: config
  mountPath: /etc/drplane/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.etcd.tls.enabled }}
- name: etcd-tls
  mountPath: /etc/drplane/etcd-tls
  readOnly: true
{{- end }}
{{- end }}

{{/*
Volumes every service gets; call with (dict "root" $ "component" NAME
"kind" "Secret" or "ConfigMap") for the configuration's object.
*/}}
{{- define "drplane.commonVolumes" -}}
- name: config
  {{- if eq .kind "Secret" }}
  secret:
    secretName: {{ include "drplane.componentName" . }}-config
    defaultMode: 0440
  {{- else }}
  configMap:
    name: {{ include "drplane.componentName" . }}-config
  {{- end }}
- name: tmp
  emptyDir: {}
{{- if .root.Values.etcd.tls.enabled }}
- name: etcd-tls
  secret:
    secretName: {{ required "etcd.tls.existingSecret is required with etcd.tls.enabled" .root.Values.etcd.tls.existingSecret | quote }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* The health port and probes of a service's container. */}}
{{- define "drplane.healthPort" -}}
- name: health
  containerPort: {{ .Values.healthPort }}
  protocol: TCP
{{- end }}

{{- define "drplane.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  {{- toYaml .Values.probes.readiness | nindent 2 }}
{{- end }}

{{/*
Pod-level settings every service shares; call with
(dict "root" $ "component" "reship").
*/}}
{{- define "drplane.podSpec" -}}
{{- $v := index .root.Values .component -}}
serviceAccountName: {{ include "drplane.serviceAccountName" .root }}
automountServiceAccountToken: {{ .root.Values.automountServiceAccountToken }}
# No Service environment variables: their DRPLANE_* names could be read as
# configuration.
enableServiceLinks: false
terminationGracePeriodSeconds: {{ .root.Values.terminationGracePeriodSeconds }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with (merge (dict) $v.nodeSelector .root.Values.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (concat $v.tolerations .root.Values.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod template metadata; call with (dict "root" $ "component" "x" "checksum" SUM). */}}
{{- define "drplane.podMetadata" -}}
{{- $v := index .root.Values .component -}}
labels:
  {{- include "drplane.labels" . | nindent 2 }}
  {{- with (merge (dict) $v.podLabels .root.Values.podLabels) }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ .checksum }}
  {{- with (merge (dict) $v.podAnnotations .root.Values.podAnnotations) }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
