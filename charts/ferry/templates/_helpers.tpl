{{/* Names, labels and small values shared by the Ferry chart's templates. */}}

{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "ferry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ferry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ferry.labels" -}}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ferry
helm.sh/chart: {{ include "ferry.chart" . }}
{{- end }}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ferry.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "ferry.leaderElectionNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/* The Lease the operator locks; fixed by the operator's --leader-election-id. */}}
{{- define "ferry.leaderElectionID" -}}
ferry-leader
{{- end }}

{{- define "ferry.webhookServiceName" -}}
{{- printf "%s-webhook" (include "ferry.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ferry.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "ferry.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ferry.webhookCertDir" -}}
/tmp/k8s-webhook-server/serving-certs
{{- end }}

{{/* DNS names the API server uses to reach the webhook Service. */}}
{{- define "ferry.webhookDNSNames" -}}
{{- $svc := include "ferry.webhookServiceName" . -}}
{{- list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) | toJson }}
{{- end }}

{{/* The chart-made webhook certificate already in the cluster, as JSON {"crt","key","ca"} (base64
values), or "" when there is none (first install, `helm template`, a Secret lacking a key). Reusing
it keeps the caBundle stable across upgrades; webhook.yaml and deployment.yaml both ask. */}}
{{- define "ferry.webhookExistingCert" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "ferry.webhookSecretName" .) }}
{{- $crt := dig "data" "tls.crt" "" $existing }}
{{- $key := dig "data" "tls.key" "" $existing }}
{{- $ca := dig "data" "ca.crt" "" $existing }}
{{- if and $crt $key $ca }}
{{- dict "crt" $crt "key" $key "ca" $ca | toJson }}
{{- end }}
{{- end }}

{{/* The chart-made webhook pair as JSON {"ca","crt","key"} (base64 values): the one in the cluster
(ferry.webhookExistingCert) or, when there is none, a new CA and certificate. Made once per render
and kept in .Values (one map for all of the chart's templates), so webhook.yaml's Secret and
caBundle and deployment.yaml's checksum/webhook-tls annotation describe the same pair: the
annotation is the same on install and on an upgrade that keeps the pair, and the pods roll only
when the pair changes. */}}
{{- define "ferry.webhookTLS" -}}
{{- if not (hasKey .Values "_ferryWebhookTLS") }}
{{- $tls := include "ferry.webhookExistingCert" . }}
{{- if not $tls }}
{{- $svc := include "ferry.webhookServiceName" . }}
{{- $days := int .Values.webhook.selfSignedValidityDays }}
{{- $ca := genCA (printf "%s-webhook-ca" (include "ferry.fullname" .)) $days }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc .Release.Namespace) nil (include "ferry.webhookDNSNames" . | fromJsonArray) $days $ca }}
{{- $tls = dict "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc) "ca" ($ca.Cert | b64enc) | toJson }}
{{- end }}
{{- $_ := set .Values "_ferryWebhookTLS" $tls }}
{{- end }}
{{- index .Values "_ferryWebhookTLS" }}
{{- end }}
