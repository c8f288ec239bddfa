{{/* Names and labels shared by every template. */}}

{{- define "peertunnel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "peertunnel.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "peertunnel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "peertunnel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "peertunnel.operatorSelector" -}}
app.kubernetes.io/name: {{ include "peertunnel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "peertunnel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "peertunnel.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "peertunnel.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "peertunnel.sidecarImage" -}}
{{- default (include "peertunnel.image" .) .Values.sidecar.image -}}
{{- end -}}

{{/* Names the operator is told by flags; the chart's objects carry the same names. */}}
{{- define "peertunnel.webhookService" -}}{{ include "peertunnel.fullname" . }}-webhook{{- end -}}
{{- define "peertunnel.webhookSecret" -}}{{ include "peertunnel.fullname" . }}-webhook-tls{{- end -}}
{{- define "peertunnel.webhookConfig" -}}{{ include "peertunnel.fullname" . }}{{- end -}}
{{- define "peertunnel.leaseName" -}}{{ include "peertunnel.fullname" . }}-operator{{- end -}}
{{- define "peertunnel.certificate" -}}{{ include "peertunnel.fullname" . }}-webhook{{- end -}}

{{/* The sidecar/relay container security context (operator/inject/render.ts sidecarSecurityContext). */}}
{{- define "peertunnel.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
