-- Free bytes on the disks where laion's parts go (its storage policy), and their paths: the load
-- checks them before it starts (see load.check_disk_space).
SELECT groupArray(path) AS paths, sum(free_space) AS free
FROM system.disks
WHERE name IN (
    SELECT arrayJoin(disks) FROM system.storage_policies
    WHERE policy_name = (SELECT storage_policy FROM system.tables WHERE database = currentDatabase() AND name = {table:String})
);
