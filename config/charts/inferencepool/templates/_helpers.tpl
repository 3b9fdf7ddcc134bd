{{/* The InferencePool's name: inferencePool.name, else the release name. */}}
{{- define "inferencepool.poolName" -}}
{{- default .Release.Name .Values.inferencePool.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The picker's objects (Deployment, Service, ConfigMap, RBAC): <pool>-epp. */}}
{{- define "inferencepool.eppName" -}}
{{- printf "%s-epp" (include "inferencepool.poolName" . | trunc 59 | trimSuffix "-") -}}
{{- end -}}

{{- define "inferencepool.serviceAccountName" -}}
{{- if .Values.inferenceExtension.serviceAccount.create -}}
{{- default (include "inferencepool.eppName" .) .Values.inferenceExtension.serviceAccount.name -}}
{{- else -}}
{{- required "inferenceExtension.serviceAccount.name is required when serviceAccount.create is false" .Values.inferenceExtension.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "inferencepool.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "inferencepool.labels" -}}
helm.sh/chart: {{ include "inferencepool.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: igw
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of the picker's objects. */}}
{{- define "inferencepool.eppLabels" -}}
{{ include "inferencepool.labels" . }}
app.kubernetes.io/name: igw-epp
inferencepool: {{ include "inferencepool.eppName" . }}
{{- end -}}

{{/* Labels selecting the picker's pods; never the model servers'. */}}
{{- define "inferencepool.selectorLabels" -}}
app.kubernetes.io/name: igw-epp
app.kubernetes.io/instance: {{ .Release.Name }}
inferencepool: {{ include "inferencepool.eppName" . }}
{{- end -}}

{{- define "inferencepool.image" -}}
{{- $img := .Values.inferenceExtension.image -}}
{{- if $img.reference -}}
{{- $img.reference -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The igw epp Service's cluster DNS name (what the gateway dials). */}}
{{- define "inferencepool.eppHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "inferencepool.eppName" .) .Release.Namespace -}}
{{- end -}}
