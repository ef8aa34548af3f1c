-- Argo CD health check for openautoglm.io/TuningJob (Lua 5.1, as Argo CD's gopher-lua runs it).
-- Install: the data key in argocd-cm-snippet.yaml (resource.customizations.health.openautoglm.io_TuningJob).
--   Progressing  the operator has not seen this generation yet, or trials are running
--   Healthy      Ready=True: the job succeeded (budget, target or timeout reached)
--   Degraded     Stalled=True: the job failed, its spec is invalid, or an edit was refused
-- The conditions are written by openautoglm.k8s.builders.build_conditions (kstatus semantics).
local hs = {}
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the TuningJob"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local conditions = {}
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    conditions[condition.type] = condition
  end
end
local function is_true(kind)
  local condition = conditions[kind]
  return condition ~= nil and condition.status == "True"
    and (generation == nil or condition.observedGeneration == nil or condition.observedGeneration >= generation)
end
local function describe(kind, fallback)
  local condition = conditions[kind]
  local text = fallback or ""
  if condition ~= nil then
    text = (condition.reason or "") .. ": " .. (condition.message or "")
  end
  return text
end
if is_true("Stalled") then
  hs.status = "Degraded"
  hs.message = describe("Stalled")
elseif is_true("Ready") then
  hs.status = "Healthy"
  hs.message = describe("Ready")
elseif obj.status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = (obj.status.reason or "Failed") .. ": " .. (obj.status.message or "")
else
  hs.status = "Progressing"
  hs.message = "Trials " .. (obj.status.progress or "starting")
end
return hs
