-- Stop a failed index mutation so it does not retry in the background forever.
KILL MUTATION WHERE database = currentDatabase() AND table = {table:String} AND mutation_id = {mutation_id:String};
