{{/* Chart name, overridable. */}}
{{- define "dragnet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name, with the chart name unless it already has it. */}}
{{- define "dragnet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dragnet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that never change for the life of a release: the DaemonSet selector. */}}
{{- define "dragnet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dragnet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "dragnet.labels" -}}
helm.sh/chart: {{ include "dragnet.chart" . }}
{{ include "dragnet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "dragnet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dragnet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dragnet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "dragnet.secretName" -}}
{{- if .Values.secret.create -}}
{{- default (printf "%s-keys" (include "dragnet.fullname" .)) .Values.secret.name -}}
{{- else -}}
{{- required "secret.name: the Secret with the gateway's keys (see values.yaml)" .Values.secret.name -}}
{{- end -}}
{{- end -}}
