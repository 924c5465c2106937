{{/* Names, labels and the pieces every pod of the chart shares: one home for each. */}}

{{- define "faas-portal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" cut to 52 characters: room for the longest suffix ("-dispatcher"). */}}
{{- define "faas-portal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "faas-portal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "faas-portal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "faas-portal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "faas-portal.labels" -}}
helm.sh/chart: {{ include "faas-portal.chart" . }}
{{ include "faas-portal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of one component; call with (dict "root" $ "component" "web"). */}}
{{- define "faas-portal.componentLabels" -}}
{{ include "faas-portal.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "faas-portal.componentSelector" -}}
{{ include "faas-portal.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "faas-portal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "faas-portal.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: by digest when one is given, else by tag (default: the chart's appVersion). */}}
{{- define "faas-portal.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The web Service's in-cluster name, which Fission's fetcher downloads archives from. */}}
{{- define "faas-portal.serviceHost" -}}
{{- printf "%s-web.%s.svc.cluster.local" (include "faas-portal.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Where the existing Secret's keys are mounted: the portal reads them through NAME_FILE. */}}
{{- define "faas-portal.secretsDir" -}}
/var/run/secrets/faas-portal
{{- end }}

{{/* The pod-level fields every pod shares: pull secrets, security context. */}}
{{- define "faas-portal.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{ end -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* The container fields every container shares: image, security context, environment and the
     mounts of the secrets and /tmp. */}}
{{- define "faas-portal.containerCommon" -}}
image: {{ include "faas-portal.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
env:
  {{- range $name, $value := include "faas-portal.settings" . | fromYaml }}
  - name: {{ $name }}
    value: {{ $value | quote }}
  {{- end }}
  {{- include "faas-portal.secretEnv" . | trim | nindent 2 }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* NAME_FILE for each key of the existing Secret: required ones always, optional ones when named. */}}
{{- define "faas-portal.secretEnv" -}}
{{- $dir := include "faas-portal.secretsDir" . }}
{{- $keys := .Values.secrets.keys }}
{{- $vars := dict "DATABASE_URL" $keys.databaseUrl "REDIS_URL" $keys.redisUrl "PORTAL_SECRET_KEY" $keys.secretKey "PORTAL_SECRETS_KEYS" $keys.secretsKeys "PORTAL_METRICS_TOKEN" $keys.metricsToken "PROMETHEUS_USERNAME" $keys.prometheusUsername "PROMETHEUS_PASSWORD" $keys.prometheusPassword }}
{{- range $var := keys $vars | sortAlpha }}
{{- $key := get $vars $var }}
{{- if $key }}
- name: {{ $var }}_FILE
  value: {{ printf "%s/%s" $dir $key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The volume mounts every container shares (add a container's own after these). */}}
{{- define "faas-portal.volumeMounts" -}}
- name: secrets
  mountPath: {{ include "faas-portal.secretsDir" . }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* The volumes every pod shares. */}}
{{- define "faas-portal.volumes" -}}
- name: secrets
  secret:
    secretName: {{ required "secrets.existingSecret is required: the name of an existing Secret holding the portal's secrets (docs/install-kubernetes.md)" .Values.secrets.existingSecret }}
    defaultMode: 0440
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{/* checkov's image-digest check (CKV_K8S_43) only when no digest is given: the image is then
     pinned by the tag the operator chose, which is theirs to pin further. */}}
{{- define "faas-portal.digestSkip" -}}
{{- if not .Values.image.digest -}}
checkov.io/skip1: CKV_K8S_43=image.digest pins the image by digest when set; without it the image is the exact tag image.tag (default the chart's appVersion)
{{- else -}}
faas-portal.io/image-digest: {{ .Values.image.digest | quote }}
{{- end }}
{{- end }}

{{/* The portal's non-secret settings (portal/settings.py, docs/kubernetes.md section 3) as a map;
     every container gets them as env. Not a ConfigMap: the migration hook runs before any
     non-hook object exists. Secrets are files: see faas-portal.secretEnv. */}}
{{- define "faas-portal.settings" -}}
{{- $fullname := include "faas-portal.fullname" . }}
{{- $serviceHost := include "faas-portal.serviceHost" . }}
{{- $hosts := list $serviceHost (printf "%s-web.%s.svc" $fullname .Release.Namespace) }}
{{- $origins := list }}
{{- range .Values.ingress.hosts }}
{{- $hosts = append $hosts . }}
{{- $origins = append $origins (printf "https://%s" .) }}
{{- end }}
{{- $hosts = concat $hosts .Values.allowedHosts | uniq }}
{{- $origins = concat $origins .Values.csrfTrustedOrigins | uniq }}
DJANGO_SETTINGS_MODULE: portal.settings
PORTAL_BACKEND: {{ .Values.backend | quote }}
PORTAL_HTTPS: {{ ternary "1" "0" .Values.https | quote }}
PORTAL_ALLOWED_HOSTS: {{ join "," $hosts | quote }}
PORTAL_CSRF_TRUSTED_ORIGINS: {{ join "," $origins | quote }}
PORTAL_LOG_LEVEL: {{ .Values.logLevel | quote }}
PORTAL_INTERNAL_URL: {{ printf "http://%s:%d" $serviceHost (int .Values.service.port) | quote }}
PORTAL_K8S_NAMESPACE: {{ .Release.Namespace | quote }}
PORTAL_K8S_PORT: {{ .Values.web.port | quote }}
PORTAL_NAMESPACE_PREFIX: {{ .Values.kubernetes.namespacePrefix | quote }}
PORTAL_PUBLIC_ROUTER_URL: {{ .Values.fission.publicRouterUrl | quote }}
KUBERNETES_ROUTER_URL: {{ .Values.fission.routerUrl | quote }}
FISSION_NAMESPACE: {{ .Values.fission.namespace | quote }}
FISSION_ROUTER_NAMESPACE: {{ .Values.fission.routerNamespace | quote }}
KUBERNETES_DNS_NAMESPACE: {{ .Values.kubernetes.dnsNamespace | quote }}
KUBERNETES_API_SERVER_CIDRS: {{ join "," .Values.kubernetes.apiServerCidrs | quote }}
KUBERNETES_TIMEOUT_S: {{ .Values.kubernetes.timeoutSeconds | quote }}
PROMETHEUS_URL: {{ .Values.prometheus.url | quote }}
PROMETHEUS_TIMEOUT_S: {{ .Values.prometheus.timeoutSeconds | quote }}
METRICS_JOB: {{ .Values.prometheus.job | quote }}
METRICS_SCRAPE_INTERVAL_S: {{ .Values.prometheus.scrapeIntervalSeconds | quote }}
{{- end }}
