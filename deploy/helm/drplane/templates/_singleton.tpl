{{/*
The Deployment of reship or collector: (dict "root" $ "component" NAME).
Exactly one replica, replaced with Recreate so that two never run at once.
*/}}
{{- define "drplane.singletonDeployment" -}}
{{- $root := .root }}
{{- $v := index $root.Values .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "drplane.componentName" . }}
  labels:
    {{- include "drplane.labels" . | nindent 4 }}
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      {{- include "drplane.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      {{- include "drplane.podMetadata" (merge (dict "checksum" (include (printf "drplane.%s.config" .component) $root | sha256sum)) .) | nindent 6 }}
    spec:
      {{- include "drplane.podSpec" . | nindent 6 }}
      {{- with ($v.affinity | default $root.Values.affinity) }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "drplane.image" . | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: ["--config", "/etc/drplane/config/config.yaml"]
          ports:
            {{- include "drplane.healthPort" $root | nindent 12 }}
          env:
            {{- include "drplane.commonEnv" $root | nindent 12 }}
            {{- include "drplane.mysqlPasswordEnv" $v.mysql | nindent 12 }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- include "drplane.probes" $root | nindent 10 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "drplane.commonMounts" $root | nindent 12 }}
      volumes:
        {{- include "drplane.commonVolumes" (dict "root" $root "component" .component "kind" "ConfigMap") | nindent 8 }}
{{- end }}
