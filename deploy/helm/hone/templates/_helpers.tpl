{{/* Names, labels and shared pieces of the Hone chart. */}}

{{- define "hone.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hone.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "hone.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "hone.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Name of one component's objects: <fullname>-<component>, at most 63 characters. */}}
{{- define "hone.componentName" -}}
{{- printf "%s-%s" (include "hone.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hone.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component; call with (dict "root" $ "component" "scorer"). */}}
{{- define "hone.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hone.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "hone.labels" -}}
helm.sh/chart: {{ include "hone.chart" .root }}
{{ include "hone.selectorLabels" . }}
app.kubernetes.io/part-of: hone
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "hone.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hone.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hone.credentialsSecret" -}}
{{- if .Values.credentials.create }}
{{- include "hone.componentName" (dict "root" . "component" "credentials") }}
{{- else }}
{{- required "credentials.existingSecret (or credentials.create) is required" .Values.credentials.existingSecret }}
{{- end }}
{{- end }}

{{- define "hone.torchserveKeysSecret" -}}
{{- default (include "hone.componentName" (dict "root" . "component" "torchserve-keys")) .Values.torchserve.keysSecret }}
{{- end }}

{{/* <registry>/<repository>:<tag>; call with (dict "root" $ "repository" "hone-scorer" "tag" ""). */}}
{{- define "hone.image" -}}
{{- $tag := default .root.Chart.AppVersion (default .root.Values.image.tag .tag) }}
{{- if .root.Values.image.registry }}
{{- printf "%s/%s:%s" .root.Values.image.registry .repository $tag }}
{{- else }}
{{- printf "%s:%s" .repository $tag }}
{{- end }}
{{- end }}

{{- define "hone.torchserveUrl" -}}
{{- $root := .root }}
{{- $explicit := index $root.Values.torchserve (printf "%sUrl" .api) }}
{{- if $explicit }}
{{- $explicit }}
{{- else if $root.Values.torchserve.enabled }}
{{- printf "http://%s:%d" (include "hone.componentName" (dict "root" $root "component" "torchserve")) (int .port) }}
{{- else }}
{{- required (printf "torchserve.%sUrl is required when torchserve.enabled is false" .api) "" }}
{{- end }}
{{- end }}
